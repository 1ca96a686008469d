"""Links in mail that come back to Nudge: one-click unsubscribe, open pixel, click redirect."""
