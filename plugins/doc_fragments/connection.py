"""Shared option documentation for every herd.cluster module.

The options are documented once here so the module pages, ansible-doc and the argument
spec in ``module_utils/herd_client.py`` cannot drift apart module by module.
"""


class ModuleDocFragment:
    """How a module reaches the herd master (DOCUMENTATION) and waits for jobs (JOB)."""

    DOCUMENTATION = r"""
options:
  socket:
    description:
      - Path of the herd master's local Unix socket.
      - Used when O(api_url) is not set. The socket is root-only, so run the task with
        C(become) on the master node.
      - If not set, the value of the E(HERD_SOCKET) environment variable is used.
    type: path
    default: /run/herd/master.sock
  api_url:
    description:
      - HTTPS URL of the herd master's REST API, for example V(https://master.example.com:5080).
      - When set, the module talks HTTPS and ignores O(socket).
      - If not set, the value of the E(HERD_API_URL) environment variable is used.
    type: str
  api_user:
    description:
      - User name for HTTP basic authentication against O(api_url).
      - If not set, the value of the E(HERD_API_USER) environment variable is used.
    type: str
  api_password:
    description:
      - Password for O(api_user).
      - If not set, the value of the E(HERD_API_PASSWORD) environment variable is used.
    type: str
  api_token:
    description:
      - Bearer token for O(api_url); an alternative to O(api_user)/O(api_password).
      - If not set, the value of the E(HERD_API_TOKEN) environment variable is used.
    type: str
  validate_certs:
    description:
      - Verify the master's TLS certificate (against O(ca_path) when given, else the system store).
      - Only set to V(false) on throw-away lab clusters.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file with the CA that signed the master's certificate (the cluster CA).
      - If not set, the value of the E(HERD_API_CA) environment variable is used.
    type: path
"""

    JOB = r"""
options:
  wait:
    description:
      - Wait for the submitted job to finish and fail the task if the job fails.
      - With V(false) the module returns as soon as the master accepted the job; RV(job_ids)
        tells which job to follow, and the task reports C(changed) because changes were queued.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for a submitted job to finish when O(wait=true).
      - On timeout the task fails but the job keeps running on the master.
      - C(timeout) is the old name, kept as an alias.
    type: int
    default: 3600
    aliases: [timeout]
  priority:
    description:
      - Priority of the submitted job in the master's queue, from V(-20) (first) to V(19)
        (last), as Ganeti's C(--priority); V(0) is normal. A waiting job's priority rises
        with age, so a low one still runs eventually.
    type: int
    default: 0
  reason:
    description:
      - Why the change is made, kept in the job's reason trail (C(herd job info)) beside
        the module and, under AWX or Automation Platform, the AWX job id.
    type: str
"""
