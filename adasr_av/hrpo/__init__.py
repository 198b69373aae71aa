"""HRPO: group rollouts through the streaming protocol, rewards in stream seconds, hierarchical
advantages, and the clipped policy-gradient trainer."""
