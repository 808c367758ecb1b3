"""Render backends behind one interface (base.py): cpu (PyAV) and nvenc (PyNvVideoCodec)."""
