"""What the tests share, and the benches in bench/ import as a package (no sys.path tricks):

- fixtures:    the pytest plugin (registered in tests/conftest.py): the session's own machine-wide
               cache, images made on the fly, an empty library, the committed awkward files, a
               library of the committed photos with real features, the session's ONNX export
               and the reliability template
- builders:    small libraries with real image files, built without the importer or a model
- processes:   whether a child process still runs, waiting for it to end
- reliability: driving the real command line in subprocesses: kills, full disks, a second writer
- image_bombs, bad_corpus: hostile and broken image files
- raw_files:   minimal camera RAW files (DNGs with an embedded preview) made on the fly
"""
