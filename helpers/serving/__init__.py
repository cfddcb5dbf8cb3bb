"""Serving a model over HTTP: an OpenAI-compatible endpoint (``app``) and a launcher that runs
it as a subprocess on a free local port and always stops it (``launcher``)."""
