"""Exports: render requests, their history and downloads (HTTP), and live progress (websockets)."""
