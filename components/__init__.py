"""workhub's Pulumi program, in layers; a module imports only its own layer or earlier ones:

    constants.py   what the engine's plugin processes need at start, importing nothing
    config/        typed, validated stack config
    render/        pure functions of typed config -> script text (host/ and swarm/ side by side)
    plan/          what a stack will build, decided before anything runs
    ssh.py         the SSH session the provider and the CLI (workhub/) run scripts through
    resources/     the Pulumi resources (host/ and swarm/ side by side)
    program.py     wiring only: config -> plan -> resources

remote.py, stack_key.py and swarm_member.py only keep the module paths that existing stacks' state names.
.importlinter holds the rule as contracts; tests/unit/project/test_layers.py checks them.
"""
