"""The hub on the network (``aismm serve --http``): git smart HTTP through stock
``git http-backend``, the JSON API under ``/api/``, server-rendered pages and A2A agent cards.

``server`` runs the ASGI app (``app``) with uvicorn in a thread of the resident process;
``auth`` turns an ``Authorization`` header into an actor; ``access`` holds the read rules;
``git`` is the CGI bridge; ``api`` and ``pages`` are the JSON and HTML faces.
"""
