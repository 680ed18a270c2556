"""The fan-out benchmark (issue #8): run ``python bench/fanout.py``; see bench/README.md."""
