"""Pulumi components for the banyan-core platform, one per part, each built for Docker or Kubernetes."""
