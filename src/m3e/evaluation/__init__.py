"""Evaluation: MTEB-exact metrics, built-in Chinese tasks on local files, and a runner writing results."""
