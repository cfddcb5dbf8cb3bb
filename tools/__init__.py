"""The repository's own tooling: what only a clone of the course needs.

Never shipped in the wheel and never imported by ``helpers`` (an import-linter contract in
``make lint`` says so). The Makefile, CI and the tests run these modules from the checkout:

- ``tools.notebooks``: execute chapters top to bottom, and the notebooks' hygiene checks;
- ``tools.colab``: generate ``colab/`` from ``notebooks/``;
- ``tools.workspace``: the learner's working copies behind ``make lab``;
- ``tools.bench``: the benchmark (``make bench``);
- ``tools.drift``: the API drift check and its report (``make test-latest``);
- ``tools.makevenv``: a virtual environment, or the name of the package that is missing;
- ``tools.yoda_mistakes``: regenerate the chapter-00 adapter's mistakes (chapter 10's data).
"""
