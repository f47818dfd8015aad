/**
 * Shapes of the JSON served by the nbray dashboard API (relayed under
 * `<base_url>/nbray/api/...` by the Jupyter server extension).
 */

export type TaskState =
  | 'NIL'
  | 'PENDING_ARGS_AVAIL'
  | 'PENDING_NODE_ASSIGNMENT'
  | 'SUBMITTED_TO_WORKER'
  | 'RUNNING'
  | 'RUNNING_IN_RAY_GET'
  | 'RUNNING_IN_RAY_WAIT'
  | 'FINISHED'
  | 'FAILED'
  | string;

export interface ITaskRow {
  task_id: string;
  attempt_number: number;
  name: string;
  func_or_class_name: string;
  type: string;
  state: TaskState;
  job_id: string;
  actor_id: string | null;
  parent_task_id: string | null;
  node_id: string | null;
  worker_id: string | null;
  worker_pid: number | null;
  arg_object_ids: string[];
  return_object_ids: string[];
  context_tag: string | null;
  owner_address: string | null;
  creation_time_ms: number | null;
  start_time_ms: number | null;
  end_time_ms: number | null;
  error_type: string | null;
  error_message: string | null;
  updated_ns: number;
}

export interface ITaskDetail extends ITaskRow {
  events: { state: string; time_ms: number }[];
  error_traceback: string | null;
  required_resources: { [name: string]: number };
  actor_repr_name: string | null;
  attempts: number;
}

export interface IUsage {
  total: number;
  used: number;
}

export interface IGpuHolder {
  gpu_id: string;
  worker_id: string;
  pid: number | null;
  task_id: string | null;
  task_name: string | null;
  actor_id: string | null;
  actor_class: string | null;
}

export interface INodeRow {
  node_id: string;
  node_ip: string;
  node_name: string;
  hostname: string;
  is_head_node: boolean;
  state: 'ALIVE' | 'DEAD';
  state_message: string | null;
  resources_total: { [name: string]: number };
  resources_available: { [name: string]: number };
  cpu: IUsage;
  gpu: IUsage;
  memory: IUsage;
  gpus_in_use: IGpuHolder[];
  object_store: {
    capacity_bytes: number;
    used_bytes: number;
    spilled_bytes: number;
    num_objects: number | null;
  };
  num_workers: number | null;
  pending_leases: number;
}

export interface IActorRow {
  actor_id: string;
  class_name: string;
  state: string;
  job_id: string;
  name: string;
  node_id: string | null;
  pid: number | null;
  repr_name?: string;
  death_cause?: string | null;
}

export interface IJobRow {
  job_id: string;
  status: string;
  entrypoint: string;
  start_time_ms: number;
  driver_pid: number;
}

export interface IObjectRow {
  object_id: string;
  size_bytes: number;
  owner: { address: string; pid?: number; node_id: string; type?: string } | null;
  locations: { node_id: string; where: string; primary: boolean }[];
  reference_types: string[];
  task_status: string | null;
  call_site: string | null;
}

export interface IClusterSummary {
  gcs_connected: boolean;
  gcs_address: string;
  session_name: string;
  dashboard_url: string;
  version: string;
  nodes: { alive: number; dead: number };
  tasks: { total: number; by_state: { [state: string]: number } };
  actors: { total: number; by_state: { [state: string]: number } };
  jobs: IJobRow[];
  context_tags: string[];
  /** "ray" when the panel shows a Ray cluster; absent on nbray. */
  backend?: string;
  /** False where the cluster records no object (data) edges between tasks, as on Ray. */
  data_edges?: boolean;
}

export interface IClusterChoice {
  id: string;
  gcs_address: string;
  origin: string;
  description: string;
  started_ms: number;
  session_name: string | null;
  has_token: boolean;
}

export interface IClustersStatus {
  selection: string;
  connected: IClusterChoice | null;
  dashboard: string | null;
  error: string | null;
  clusters: IClusterChoice[];
}

export const TERMINAL_STATES = new Set(['FINISHED', 'FAILED']);
