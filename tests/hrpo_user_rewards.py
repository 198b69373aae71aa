"""A reward a user might add (named in a config as `hrpo_user_rewards:shorter_units`)."""


def shorter_units(rollouts, records):
    return [-r.stream_tokens / 100 for r in rollouts]
