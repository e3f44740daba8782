// Changes the core announces; the persisted sequence lets SSE subscribers resume.

export type EventType =
  | 'desired_lrp_created'
  | 'desired_lrp_changed'
  | 'desired_lrp_removed'
  | 'actual_lrp_created'
  | 'actual_lrp_changed'
  | 'actual_lrp_removed'
  | 'actual_lrp_crashed'
  | 'cell_changed'
  | 'service_changed';

export interface DroverEvent {
  id: number;
  type: EventType;
  at: number;
  payload: Record<string, unknown>;
}
