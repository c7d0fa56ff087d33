def only_for_beta() -> str:
    return "beta"
