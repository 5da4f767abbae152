"""Tests for legacy-gateway (a package, so test modules can share `tests.support`)."""
