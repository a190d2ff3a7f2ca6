"""Built-in stages of streamrestore; registered through the `streamrestore.stages` entry points like any plugin."""
