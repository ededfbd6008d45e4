"""Recommendations: tracking user events, journeys, engagement, and Recommend."""
