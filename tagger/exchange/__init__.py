"""What leaves or enters the app: labels as CSV/JSON, XMP keywords, sorting into folders, model files."""
