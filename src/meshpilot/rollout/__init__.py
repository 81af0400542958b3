"""Progressive delivery: Canary rollouts with metric-gated promotion and automatic rollback.

The package splits the rollout into pure parts the controller composes, so each can be
tested without Envoy, a clock or a store:

- `plan`: a Canary spec -> the ordered list of steps to run (weights, pauses, checks);
- `routes`: a RouteState (weights, header/A-B/affinity rules, mirror) -> the edited
  VirtualService spec, touching only the default route and the rollout's own named rules;
- `analysis`: metric checks against meshpilot's telemetry, Prometheus or an HTTP endpoint;
- `webhooks`: Flagger-compatible gates and notifications;
- `controller`: the loop that walks the plan, waits for Envoy's ACK, runs checks and
  records everything in the Canary's status.
"""
