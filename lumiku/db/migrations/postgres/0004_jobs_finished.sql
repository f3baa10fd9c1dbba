-- Finished jobs by finish time: the reaper's restore of terminal events a crash lost.
CREATE INDEX jobs_finished_idx ON jobs (finished_at, id) WHERE finished_at IS NOT NULL;
