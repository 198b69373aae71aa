"""Training data: synthetic stories, speech synthesis and the media files built from them."""
