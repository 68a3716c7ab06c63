"""Reading photos: the one image loader (format sniffing, safe decoding, EXIF) and JPEG segments."""
