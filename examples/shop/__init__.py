"""A small application with its own tests: how an app tests its pgqueue code (see README)."""
