"""`toloka-connector demo`: the whole pipeline end to end on embedded defaults."""
