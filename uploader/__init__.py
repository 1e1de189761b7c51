"""Uploader: validates landing files against the contracts and streams them to the stage's S3 location."""
