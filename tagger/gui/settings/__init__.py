"""The app's settings, their dialog, and the appearance (theme)."""
