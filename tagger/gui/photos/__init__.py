"""The photo grid: the column cache, its item model, the gallery view, filters, thumbnails."""
