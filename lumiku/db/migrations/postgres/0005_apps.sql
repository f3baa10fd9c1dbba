-- The apps (SPEC §8). A generation's status and progress are its job's (one source of
-- truth); these rows hold what the apps own: projects, avatars, the poses made, requests.

-- Avatar Creator ---------------------------------------------------------------------------

CREATE TABLE avatar_projects (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id),
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX avatar_projects_user_idx ON avatar_projects (user_id, id);

CREATE TABLE avatars (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id),
    project_id uuid NOT NULL REFERENCES avatar_projects (id) ON DELETE CASCADE,
    name text NOT NULL,
    source_type text NOT NULL CONSTRAINT avatars_source_type_check
        CHECK (source_type IN ('upload', 'text_to_image', 'from_preset')),
    image_key text NOT NULL,
    thumbnail_key text NOT NULL,
    width integer NOT NULL,
    height integer NOT NULL,
    persona jsonb NOT NULL,
    attributes jsonb NOT NULL,
    prompt text NOT NULL DEFAULT '',
    preset_id text,
    seed bigint,
    generation_id uuid,
    usage_count integer NOT NULL DEFAULT 0,
    last_used_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX avatars_user_idx ON avatars (user_id, id);
CREATE INDEX avatars_project_idx ON avatars (project_id, id);
-- One avatar per generation: a job that runs again after a crash finds the one it made.
CREATE UNIQUE INDEX avatars_generation_idx ON avatars (generation_id)
    WHERE generation_id IS NOT NULL;

CREATE TABLE avatar_generations (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id),
    project_id uuid NOT NULL REFERENCES avatar_projects (id) ON DELETE CASCADE,
    job_id uuid NOT NULL REFERENCES jobs (id),
    source_type text NOT NULL CONSTRAINT avatar_generations_source_type_check
        CHECK (source_type IN ('text_to_image', 'from_preset')),
    request jsonb NOT NULL,
    credit_charged bigint NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX avatar_generations_user_idx ON avatar_generations (user_id, id);
CREATE UNIQUE INDEX avatar_generations_job_idx ON avatar_generations (job_id);

CREATE TABLE avatar_usage (
    id uuid PRIMARY KEY,
    avatar_id uuid NOT NULL REFERENCES avatars (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id),
    app text NOT NULL,
    action text NOT NULL,
    reference_id text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX avatar_usage_avatar_idx ON avatar_usage (avatar_id, id);

-- Pose Generator ---------------------------------------------------------------------------

CREATE TABLE pose_projects (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id),
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    avatar_id uuid REFERENCES avatars (id) ON DELETE SET NULL,
    image_key text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX pose_projects_user_idx ON pose_projects (user_id, id);

CREATE TABLE pose_generations (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id),
    project_id uuid NOT NULL REFERENCES pose_projects (id) ON DELETE CASCADE,
    job_id uuid NOT NULL REFERENCES jobs (id),
    generation_type text NOT NULL CONSTRAINT pose_generations_type_check
        CHECK (generation_type IN ('gallery', 'text')),
    request jsonb NOT NULL,
    total_poses integer NOT NULL,
    credit_charged bigint NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX pose_generations_user_idx ON pose_generations (user_id, id);
CREATE INDEX pose_generations_project_idx ON pose_generations (project_id, id);
CREATE UNIQUE INDEX pose_generations_job_idx ON pose_generations (job_id);

-- One row per variation: the key `<pose_id>-v<i>` / `text-v<i>` is unique per generation,
-- so a resumed job skips the variations already made.
CREATE TABLE generated_poses (
    id uuid PRIMARY KEY,
    generation_id uuid NOT NULL REFERENCES pose_generations (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id),
    variation_key text NOT NULL,
    library_pose_id text,
    status text NOT NULL CONSTRAINT generated_poses_status_check
        CHECK (status IN ('succeeded', 'failed')),
    image_key text,
    skeleton_key text,
    figure_key text, -- the figure without background: what a new background goes behind
    exports jsonb NOT NULL,
    error jsonb,
    cost bigint NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX generated_poses_variation_idx ON generated_poses (generation_id, variation_key);
CREATE INDEX generated_poses_user_idx ON generated_poses (user_id, id);

CREATE TABLE pose_requests (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id),
    name text NOT NULL,
    description text NOT NULL,
    category_id text,
    reference_url text,
    status text NOT NULL CONSTRAINT pose_requests_status_check
        CHECK (status IN ('pending', 'approved', 'rejected', 'in_progress', 'completed')),
    notes text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX pose_requests_user_idx ON pose_requests (user_id, id);
CREATE INDEX pose_requests_status_idx ON pose_requests (status, id);
