"""The input model: typed stack config, its errors, the resolved spec, tiers, capacity and the env contract.

Pure: no provider SDK is imported here, so components, tooling and the policy pack can all depend on it."""
