"""(being written)"""


def mount(app) -> None:
    pass
