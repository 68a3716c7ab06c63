"""Export ▸ labels, XMP keywords, sorting into folders, the model; Import ▸ labels."""
