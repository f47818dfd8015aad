import { ITaskRow } from '../types';

let clock = 1;

/** A task row as the dashboard sends it, with defaults for what a test does not care about. */
export function task(id: string, extra: Partial<ITaskRow> = {}): ITaskRow {
  return {
    task_id: id,
    attempt_number: 0,
    name: extra.func_or_class_name || 'f',
    func_or_class_name: 'f',
    type: 'NORMAL_TASK',
    state: 'PENDING_NODE_ASSIGNMENT',
    job_id: '00000001',
    actor_id: null,
    parent_task_id: null,
    node_id: null,
    worker_id: null,
    worker_pid: null,
    arg_object_ids: [],
    return_object_ids: [`${id}-ret`],
    context_tag: null,
    owner_address: null,
    creation_time_ms: 0,
    start_time_ms: null,
    end_time_ms: null,
    error_type: null,
    error_message: null,
    updated_ns: clock++,
    ...extra
  };
}

export function later(row: ITaskRow, extra: Partial<ITaskRow>): ITaskRow {
  return { ...row, updated_ns: clock++, ...extra };
}
