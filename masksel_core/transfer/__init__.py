"""Transfer: what a mask sends (the plan), packing and unpacking it, the client and remote prediction."""
