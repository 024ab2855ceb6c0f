//! Thin tonic adapter over [`JobsService`]: decode, call, encode.

use custos_grpc::unary;
use custos_proto::v1 as pb;
use custos_proto::v1::jobs_service_server::JobsService as JobsApi;
use tonic::{Request, Response, Status};

use crate::JobsService;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl JobsApi for JobsService {
    async fn list_jobs(&self, r: Request<pb::ListJobsRequest>) -> Reply<pb::ListJobsResponse> {
        unary(r, async |ctx, m| self.list_jobs(&ctx, m).await).await
    }
    async fn get_job(&self, r: Request<pb::GetJobRequest>) -> Reply<pb::Job> {
        unary(r, async |ctx, m| self.get_job(&ctx, m).await).await
    }
    async fn cancel_job(&self, r: Request<pb::CancelJobRequest>) -> Reply<pb::Job> {
        unary(r, async |ctx, m| self.cancel_job(&ctx, m).await).await
    }
    async fn list_schedules(&self, r: Request<pb::ListSchedulesRequest>) -> Reply<pb::ListSchedulesResponse> {
        unary(r, async |ctx, m| self.list_schedules(&ctx, m).await).await
    }
    async fn update_schedule(&self, r: Request<pb::UpdateScheduleRequest>) -> Reply<pb::Schedule> {
        unary(r, async |ctx, m| self.update_schedule(&ctx, m).await).await
    }
    async fn run_schedule(&self, r: Request<pb::RunScheduleRequest>) -> Reply<pb::Job> {
        unary(r, async |ctx, m| self.run_schedule(&ctx, m).await).await
    }
}
