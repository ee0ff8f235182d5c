"""Engines that run models: training, evaluation, prediction, benchmarking and their helpers.

Importing this package stays cheap; each engine module imports torch itself.
"""
