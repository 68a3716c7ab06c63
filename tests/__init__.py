"""The test suite (and, through tests.helpers, the shared pieces the benches use too)."""
