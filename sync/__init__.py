"""The flow: pull (vendor -> store), match, evaluate, plan (findings -> outbox), push."""
