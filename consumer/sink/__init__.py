"""The sink stage: delivering mapped requests to FullStory's server API."""
