"""Figures: matplotlib + seaborn renderings of a suite's runs."""
