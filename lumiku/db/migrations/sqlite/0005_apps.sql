-- The apps (SPEC §8). A generation's status and progress are its job's (one source of
-- truth); these rows hold what the apps own: projects, avatars, the poses made, requests.

-- Avatar Creator ---------------------------------------------------------------------------

CREATE TABLE avatar_projects (
    id UUID PRIMARY KEY NOT NULL,
    user_id UUID NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX avatar_projects_user_idx ON avatar_projects (user_id, id);

CREATE TABLE avatars (
    id UUID PRIMARY KEY NOT NULL,
    user_id UUID NOT NULL REFERENCES users (id),
    project_id UUID NOT NULL REFERENCES avatar_projects (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    source_type TEXT NOT NULL CONSTRAINT avatars_source_type_check
        CHECK (source_type IN ('upload', 'text_to_image', 'from_preset')),
    image_key TEXT NOT NULL,
    thumbnail_key TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    persona JSON NOT NULL,
    attributes JSON NOT NULL,
    prompt TEXT NOT NULL DEFAULT '',
    preset_id TEXT,
    seed INTEGER,
    generation_id uuid,
    usage_count INTEGER NOT NULL DEFAULT 0,
    last_used_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX avatars_user_idx ON avatars (user_id, id);
CREATE INDEX avatars_project_idx ON avatars (project_id, id);
-- One avatar per generation: a job that runs again after a crash finds the one it made.
CREATE UNIQUE INDEX avatars_generation_idx ON avatars (generation_id)
    WHERE generation_id IS NOT NULL;

CREATE TABLE avatar_generations (
    id UUID PRIMARY KEY NOT NULL,
    user_id UUID NOT NULL REFERENCES users (id),
    project_id UUID NOT NULL REFERENCES avatar_projects (id) ON DELETE CASCADE,
    job_id UUID NOT NULL REFERENCES jobs (id),
    source_type TEXT NOT NULL CONSTRAINT avatar_generations_source_type_check
        CHECK (source_type IN ('text_to_image', 'from_preset')),
    request JSON NOT NULL,
    credit_charged INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX avatar_generations_user_idx ON avatar_generations (user_id, id);
CREATE UNIQUE INDEX avatar_generations_job_idx ON avatar_generations (job_id);

CREATE TABLE avatar_usage (
    id UUID PRIMARY KEY NOT NULL,
    avatar_id UUID NOT NULL REFERENCES avatars (id) ON DELETE CASCADE,
    user_id UUID NOT NULL REFERENCES users (id),
    app TEXT NOT NULL,
    action TEXT NOT NULL,
    reference_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX avatar_usage_avatar_idx ON avatar_usage (avatar_id, id);

-- Pose Generator ---------------------------------------------------------------------------

CREATE TABLE pose_projects (
    id UUID PRIMARY KEY NOT NULL,
    user_id UUID NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    avatar_id UUID REFERENCES avatars (id) ON DELETE SET NULL,
    image_key TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX pose_projects_user_idx ON pose_projects (user_id, id);

CREATE TABLE pose_generations (
    id UUID PRIMARY KEY NOT NULL,
    user_id UUID NOT NULL REFERENCES users (id),
    project_id UUID NOT NULL REFERENCES pose_projects (id) ON DELETE CASCADE,
    job_id UUID NOT NULL REFERENCES jobs (id),
    generation_type TEXT NOT NULL CONSTRAINT pose_generations_type_check
        CHECK (generation_type IN ('gallery', 'text')),
    request JSON NOT NULL,
    total_poses INTEGER NOT NULL,
    credit_charged INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX pose_generations_user_idx ON pose_generations (user_id, id);
CREATE INDEX pose_generations_project_idx ON pose_generations (project_id, id);
CREATE UNIQUE INDEX pose_generations_job_idx ON pose_generations (job_id);

-- One row per variation: the key `<pose_id>-v<i>` / `text-v<i>` is unique per generation,
-- so a resumed job skips the variations already made.
CREATE TABLE generated_poses (
    id UUID PRIMARY KEY NOT NULL,
    generation_id UUID NOT NULL REFERENCES pose_generations (id) ON DELETE CASCADE,
    user_id UUID NOT NULL REFERENCES users (id),
    variation_key TEXT NOT NULL,
    library_pose_id TEXT,
    status TEXT NOT NULL CONSTRAINT generated_poses_status_check
        CHECK (status IN ('succeeded', 'failed')),
    image_key TEXT,
    skeleton_key TEXT,
    figure_key TEXT, -- the figure without background: what a new background goes behind
    exports JSON NOT NULL,
    error JSON,
    cost INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX generated_poses_variation_idx ON generated_poses (generation_id, variation_key);
CREATE INDEX generated_poses_user_idx ON generated_poses (user_id, id);

CREATE TABLE pose_requests (
    id UUID PRIMARY KEY NOT NULL,
    user_id UUID NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    category_id TEXT,
    reference_url TEXT,
    status TEXT NOT NULL CONSTRAINT pose_requests_status_check
        CHECK (status IN ('pending', 'approved', 'rejected', 'in_progress', 'completed')),
    notes TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX pose_requests_user_idx ON pose_requests (user_id, id);
CREATE INDEX pose_requests_status_idx ON pose_requests (status, id);
