"""Training: configs, supervised warm-up (SFT) and the sequences both train on."""
