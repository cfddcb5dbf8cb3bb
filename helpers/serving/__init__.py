"""Serving a model over HTTP: an OpenAI-style endpoint (``app``) and a launcher that runs
it as a subprocess on a free local port and always stops it (``launcher``)."""
