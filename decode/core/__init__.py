"""The compiled core: loop state, the jitted loop, the state transition, policies, sampling, vocab masks."""
