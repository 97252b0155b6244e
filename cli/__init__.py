"""Command handlers behind ``channelsync``; ``main.py`` parses and wires, these present."""
