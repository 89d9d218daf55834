"""The HTTP front end: search, management and operations routes (Starlette)."""
