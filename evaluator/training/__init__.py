"""Training a found architecture to a deployable model, and its weights in and out (`weights`)."""
