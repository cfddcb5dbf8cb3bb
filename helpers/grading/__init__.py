"""Tools for instructors: student copies of the chapters, and regrading submissions.

- ``python -m helpers.grading.student CHAPTER.ipynb OUT.ipynb``: the student copy
  (solutions replaced by ``...``, their verdicts cleared, cell ids kept). What a
  learner opens is made from it: ``colab/`` (``tools.colab``) and the ``make lab``
  working copies (``tools.workspace``).
- ``python -m helpers.grading.regrade REFERENCE.ipynb SUBMISSION.ipynb``: re-execute a
  submission, check that its stored outputs are genuine and its answers right.

Both rely on the exercise cell convention described in ``cells.py``. Regrading runs
the student's code with your permissions: it is not a sandbox (see ``regrade.py``).
"""
