"""The ``crossencoder`` command line."""
