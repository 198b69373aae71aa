"""Encoders: turn audio (ASR) or frames (OCR, captions) into timestamped text chunks."""
