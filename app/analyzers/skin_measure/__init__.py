"""The measured skin analysis: colour science, frame, metrics, quality gate."""
