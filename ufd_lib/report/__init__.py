"""Tables, figures, the index page and the provenance of a run: everything written for a reader."""
