"""Tests of bertplat.metrics."""
