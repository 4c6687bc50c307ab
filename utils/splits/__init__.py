"""Stored data splits (package data), read by utils.text."""
