"""Is an upload the image it claims to be? One module per concern of the check."""
