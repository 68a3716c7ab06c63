"""The desktop front end: the only package that speaks Qt.

Modules here keep to one job each; `app.run` is the composition root that
builds the pieces and hands them to each other, so no module reaches for a
global application object to find its collaborators."""
